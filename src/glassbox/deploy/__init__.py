"""glassbox.deploy"""
