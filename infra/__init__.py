"""Infrastructure of the hybrid setup: the flow runtime image (see infra/Dockerfile)."""
