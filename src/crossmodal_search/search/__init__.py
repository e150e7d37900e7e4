"""crossmodal_search.search"""
