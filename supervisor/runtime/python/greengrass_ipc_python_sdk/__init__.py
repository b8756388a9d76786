# Evergreen's stand-in for the Greengrass core's IPC client package.
