"""The V2 floor: an MLServer runtime that does no work (probabilities [0.75, 0.25] per row), served by the
same MLServer with the same settings as Glassbox's runtime (benchmarks/v2.py)."""

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

PROBABILITIES = [0.75, 0.25]


class ConstantV2(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = payload.inputs[0].shape[0]
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(
                    name="probabilities", shape=[rows, 2], datatype="FP64", data=PROBABILITIES * rows
                )
            ],
        )
