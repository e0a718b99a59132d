"""SAT served by MONAI Label (`pip install satsegmentlib[server]`): the app, its `sat` infer task and the
engine behind it. Only `task` and `app/main.py` import MONAI Label; the rest is plain Python."""
