"""The application layer on top of everything: the `hitl` CLI, the demo, onboarding scaffolds."""
