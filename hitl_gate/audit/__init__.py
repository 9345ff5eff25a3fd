"""hitl_gate/audit"""
