"""Passes over an exported ONNX graph: one bidirectional node per layer, the gate reordering folded.

The translations write one node per direction (the trace has one op per direction). ``optimize``
merges each forward node with the reverse node that reads the same input and lengths into one node
with ``direction="bidirectional"``, as ONNX's operators have it, and folds the constant subgraphs
that give the recurrent nodes their weights and biases (the gate reordering, the two directions'
stacking), whatever their size: torch's exporter folds constants of up to 8192 elements, so larger
weights would be gathered again on every inference.
"""

from __future__ import annotations

import numpy as np
from onnxscript import ir, optimizer

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# The inputs of ONNX's LSTM, GRU and RNN that both directions share: X and sequence_lens. The
# others (W, R, B, initial_h, initial_c, P) are per direction, stacked on their first axis.
SHARED_INPUTS = (0, 4)
# The inputs read as weights and biases: W, R, B and LSTM's peepholes P.
WEIGHT_INPUTS = (1, 2, 3, 7)
# Attributes listed per direction: a bidirectional node's lists the forward's, then the reverse's.
PER_DIRECTION_ATTRIBUTES = ("activations", "activation_alpha", "activation_beta")


def optimize(model: ir.Model) -> ir.Model:
    """Merge the directions of every recurrent layer and fold its weights, in place; then onnxscript's
    optimizer, as torch's exporter ran it, removes what they left unused.

    ``rnnkit.onnx.export`` calls it; call it on ``torch.onnx.export(...).model`` after an export
    with ``rnnkit.onnx.translations()`` for the same graph. Returns ``model``.
    """
    if merge_directions(model.graph):
        ir.passes.common.TopologicalSortPass()(model)
    fold_weights(model)
    optimizer.optimize(model)
    return model


def merge_directions(graph: ir.Graph) -> int:
    """Replace each pair of a forward and a reverse recurrent node that read the same input with the
    same lengths and attributes by one bidirectional node; returns how many pairs were merged.

    The merged node's results are split back into the two nodes' results (Y: (T, 2, B, H) on axis
    1; Y_h, Y_c: (2, B, H) on axis 0), so the graph around it keeps torch's layout. Leaves the graph
    to be sorted again: the forward node's users now read results made after them.
    """
    merged = 0
    for reverse in [node for node in graph if _direction(node) == "reverse"]:
        forward = next((use.node for use in reverse.inputs[0].uses() if _pairs_with(use.node, reverse)), None)
        if forward is not None:
            _merge(graph, forward, reverse)
            merged += 1
    return merged


def fold_weights(model: ir.Model) -> None:
    """Fold the constant subgraphs that feed the recurrent nodes' weights and biases, whatever their size."""
    feeding = _ancestors(
        [_input(node, slot) for node in model.graph if node.op_type in RECURRENT_OPS for slot in WEIGHT_INPUTS]
    )
    optimizer.fold_constants(model, should_fold=lambda node: True if node in feeding else None)


def _direction(node: ir.Node) -> str | None:
    if node.op_type not in RECURRENT_OPS or node.domain not in ("", "ai.onnx"):
        return None
    attribute = node.attributes.get("direction")
    return "forward" if attribute is None else attribute.as_string()


def _ancestors(values: list[ir.Value | None]) -> set[ir.Node]:
    """Every node whose results ``values`` are computed from."""
    found: set[ir.Node] = set()
    producers = [value.producer() for value in values if value is not None]
    while producers:
        node = producers.pop()
        if node is not None and node not in found:
            found.add(node)
            producers += [value.producer() for value in node.inputs if value is not None]
    return found


def _input(node: ir.Node, slot: int) -> ir.Value | None:
    return node.inputs[slot] if slot < len(node.inputs) else None


def _attributes(node: ir.Node) -> dict[str, object]:
    return {name: attribute.value for name, attribute in node.attributes.items() if name != "direction"}


def _pairs_with(forward: ir.Node, reverse: ir.Node) -> bool:
    slots = range(max(len(forward.inputs), len(reverse.inputs)))
    return (
        _direction(forward) == "forward"
        and forward.op_type == reverse.op_type
        and _attributes(forward) == _attributes(reverse)
        and all(_input(forward, slot) is _input(reverse, slot) for slot in SHARED_INPUTS)
        and all((_input(forward, slot) is None) == (_input(reverse, slot) is None) for slot in slots)
        # One node cannot read what either of the two computes (a reverse pass started from the
        # forward one's final state, say).
        and forward not in _ancestors(list(reverse.inputs))
        and reverse not in _ancestors(list(forward.inputs))
    )


def _merge(graph: ir.Graph, forward: ir.Node, reverse: ir.Node) -> None:
    new_nodes = []

    def stacked(slot: int) -> ir.Value | None:
        first, second = _input(forward, slot), _input(reverse, slot)
        if slot in SHARED_INPUTS or first is None:
            return first
        new_nodes.append(ir.node("Concat", [first, second], {"axis": 0}))
        return new_nodes[-1].outputs[0]

    slots = range(max(len(forward.inputs), len(reverse.inputs)))
    attributes = _attributes(forward)
    per_direction = {name: 2 * list(attributes[name]) for name in PER_DIRECTION_ATTRIBUTES if name in attributes}
    node = ir.node(
        forward.op_type,
        [stacked(slot) for slot in slots],
        {**attributes, **per_direction, "direction": "bidirectional"},
        num_outputs=len(forward.outputs),
    )
    halves = ir.node("Constant", [], {"value": ir.tensor(np.array([1, 1], dtype=np.int64))})
    new_nodes += [node, halves]
    for number, (first, second) in enumerate(zip(forward.outputs, reverse.outputs)):
        axis = 1 if number == 0 else 0  # Y is (T, 2, B, H); Y_h and Y_c are (2, B, H)
        split = ir.node("Split", [node.outputs[number], halves.outputs[0]], {"axis": axis}, num_outputs=2)
        new_nodes.append(split)
        ir.convenience.replace_all_uses_with([first, second], split.outputs, replace_graph_outputs=True)
    graph.insert_before(reverse, new_nodes)
    graph.remove([forward, reverse], safe=True)
