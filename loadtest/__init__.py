"""Load, analysis and reports for drama-streaming; ``loadtest.stack`` runs the local stack."""
