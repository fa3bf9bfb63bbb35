from boomerang.testing.tiny import *  # noqa: F401,F403  (tiny random-weight models: moved into the package)
