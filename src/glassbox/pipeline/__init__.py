"""glassbox.pipeline"""
