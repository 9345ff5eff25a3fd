"""Who acted: people, their SSH keys and the signatures that prove a human act."""
