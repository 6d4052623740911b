"""danlu/checks"""
