"""glassbox.explain"""
