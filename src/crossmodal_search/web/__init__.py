"""crossmodal_search.web"""
