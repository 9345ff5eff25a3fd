"""Routing: every case of a day sent to exactly one route by the domain's policy in force.

`cases` joins the day's inputs, features and scores; `decisions` makes the audit `decisions`
rows; `slices` cuts a stored day into row ranges; `sliced` routes a day slice by slice with the
whole day's result; `backlog` and `shadow` are what a run inherits and compares; `day` is the
stage as a whole (policy in force, kill switch, backlog, shadow policy); `invariants` are what
the checks on a routed day assert. Policy control and the kill switch themselves are in
`policies.control`.
"""
