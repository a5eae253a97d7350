"""Built-in models. Each is a :class:`tmepde.Model` built on the public model API."""
