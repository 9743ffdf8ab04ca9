"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class KDError(Exception):
    """A problem with the user's input or environment, stated in one line."""


class MissingDependency(KDError):
    def __init__(self, package: str, purpose: str):
        super().__init__(f"{purpose} needs the package '{package}': pip install {package}")
