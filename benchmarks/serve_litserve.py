"""The LitServe side of benchmarks/serve.py: the same exported model (OnnxPredictor) behind
LitServe's own batching (up to 32 requests, 5 ms wait), answering POST /predict like serve.py.

    python benchmarks/serve_litserve.py MODEL_DIR PORT
"""

import gc
import sys

import litserve as ls

from project.inference.onnx_predictor import OnnxPredictor


class Api(ls.LitAPI):
    def __init__(self, model: str, **kwargs) -> None:  # noqa: ANN003 - LitAPI's
        super().__init__(**kwargs)
        self.model = model

    def setup(self, device: str) -> None:
        self.labeller = OnnxPredictor.from_folder(self.model)
        gc.freeze()  # as serve.py does: full collections over torch's objects paused requests

    def decode_request(self, request: dict) -> list[str]:
        return request["texts"]

    def batch(self, inputs: list[list[str]]) -> list[list[str]]:
        return inputs

    def predict(self, inputs: list[list[str]]) -> list[list[dict]]:
        results, out = self.labeller.predict([t for texts in inputs for t in texts]), []
        for texts in inputs:  # back into one list per request
            out.append(results[: len(texts)])
            results = results[len(texts):]
        return out

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: list[dict]) -> dict:
        return {"predictions": output}


if __name__ == "__main__":
    model, port = sys.argv[1], int(sys.argv[2])
    print(f"LitServe at http://127.0.0.1:{port}/", flush=True)
    server = ls.LitServer(Api(model, max_batch_size=32, batch_timeout=0.005), accelerator="cpu", workers_per_device=1,
                          timeout=60)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)
