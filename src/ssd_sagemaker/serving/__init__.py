"""Inference: request checks and negotiation, the predictor, response bodies, the Flask routes,
the gunicorn server (real-time and batch transform), and `predict` on local files."""
