"""A front-end's side of multi-process mode: the engine client, the follower model table, the remote repository."""
