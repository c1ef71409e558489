"""ESAN-RT: runtime/backends."""
