# Evergreen's stand-in for the Greengrass core's greengrass_common package,
# which greengrasssdk imports but does not ship. Written for Evergreen.
