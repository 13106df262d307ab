"""attnbench: which attention should I use at my sequence length, on my hardware, under my memory budget?"""
__version__ = "0.1.0"
