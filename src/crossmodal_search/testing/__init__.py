"""crossmodal_search.testing"""
