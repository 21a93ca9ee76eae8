"""I/O beside the IR core: output folders written atomically (:mod:`snnc.io.files`) and the
target-independent report (:mod:`snnc.io.report`), and calling a trusted ``file.py:function``
(:mod:`snnc.io.trusted`). Datasets are :mod:`snnc.data`.
"""
