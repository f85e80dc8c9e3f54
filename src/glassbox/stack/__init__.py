"""glassbox.stack"""
