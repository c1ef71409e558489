"""ESAN-RT: export."""
