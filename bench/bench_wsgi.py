"""The service as benchmarked: the real app, plus one bare route to compare against."""
from flask import Response

from webapp import create_app
from webapp.extensions import csrf

app = create_app()


# Under /api/ like the send API, so that it meets the same request hooks (and no first-run redirect).
@app.route("/api/bench/bare", methods=["GET", "POST"])
@csrf.exempt
def bare():
    """What a Flask route costs on this server with no work in it: the baseline."""
    return Response("success", mimetype="text/plain")
