"""``python -m slicemri_lite.analysis``: the throughput bench (``--help`` for its options)."""

from slicemri_lite.analysis._bench import main

if __name__ == "__main__":
    main()
