"""Sample applications on raftwork: each a state machine, HTTP routes and a typed client."""
