"""Execution: final actions acted on once, adverse-action notices and later outcomes.

`final_actions` decides what executes; `execute` runs the stage (exactly once, notices, the
`outbox`); `accounting` closes the days (balance, outcomes, the audit seal).
"""
