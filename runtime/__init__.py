"""ESAN-RT: runtime."""
