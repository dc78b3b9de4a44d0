"""The ``setup`` blueprint: the first-run page (:mod:`.routes`) and the wizard (:mod:`.wizard`) attach to it."""
from flask import Blueprint

bp = Blueprint("setup", __name__, url_prefix="/setup")
