"""crossmodal_search.evaluation"""
