"""drama"""
