"""ESAN-RT: train."""
