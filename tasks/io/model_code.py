"""The loader of a stored model's pyfunc face (MLflow *models from code*).

``tasks.io.model_store.log_model`` logs this file's source with every model; MLflow executes it on
``mlflow.pyfunc.load_model`` (and ``mlflow models serve``). It builds the predictor from the
model's data (``artifacts/predictor``: a JSON document and the binary parts in XGBoost's and
skops' own formats), never from a pickle. ``predict`` returns a DataFrame with one column
``score``: spike probabilities, not classes.

Never imported by the project: importing it registers the model with MLflow (``set_model``). The
project loads models with :func:`tasks.io.model_store.load_predictor`, which reads the same data
without running this file.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SpikeScores(PythonModel):
    def load_context(self, context) -> None:
        from tasks.io.model_store import PREDICTOR_ARTIFACT, read_predictor

        self.predictor = read_predictor(context.artifacts[PREDICTOR_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        return pd.DataFrame({"score": self.predictor.predict_proba(model_input)})


mlflow.models.set_model(SpikeScores())
