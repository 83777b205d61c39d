"""Names of the work pools this project creates, shared by setup, the stack and ``btc doctor``."""

PROCESS_POOL = "btc-process"
DOCKER_POOL = "btc-docker"
