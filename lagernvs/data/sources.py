from lagernvs.data.readers import *  # noqa: F403 (old home of the readers; import from readers)
