"""What speech needs on both paths: text cut into sentences, audio joined.

The cloud client (``api/``) and the on-device engines (``local/``) both use
these; neither package imports the other. Plain Python: nothing here imports
Home Assistant, the cloud client or the engines.
"""
