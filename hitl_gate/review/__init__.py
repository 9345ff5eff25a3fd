"""hitl_gate/review"""
