"""The sample catalogue shared by the seed commands of the three services.

Each service seeds only its own slice of it; see :mod:`catalog.sample`.
"""

from catalog.sample import CatalogDrama, CatalogEpisode, media_key, sample

__all__ = ["CatalogDrama", "CatalogEpisode", "media_key", "sample"]
