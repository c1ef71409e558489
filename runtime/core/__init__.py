"""The streaming core: clock-free schedule, letterbox, bundle manifests, errors, file helpers (numpy + OpenCV only)."""
