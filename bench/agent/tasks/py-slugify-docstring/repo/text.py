def slugify(title):
    """Lower-case the title, drop every character that is not a letter, a digit or a
    space, and join the words with single hyphens: "Hello, World!" -> "hello-world".
    """
    raise NotImplementedError
