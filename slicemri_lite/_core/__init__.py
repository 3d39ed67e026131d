"""Internal helpers every layer may use: validation, atomic writes, environment, grids.

Nothing here is public: the faces (``slicemri_lite.data``, ``.models``, ``.train``,
``.experiments``, ``.analysis``) re-export what a user needs.
"""

__all__: list[str] = []
