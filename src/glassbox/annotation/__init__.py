"""glassbox.annotation"""
