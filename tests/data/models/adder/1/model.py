import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        replies = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            replies.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", (data + 1).astype(np.float32))]))
        return replies
