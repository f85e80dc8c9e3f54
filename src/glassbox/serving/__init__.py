"""glassbox.serving"""
