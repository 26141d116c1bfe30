"""The scoring graph's outputs by name: the contract between the graph (serve/graph.py), the
server's repository, its clients and the mining job. Torch-free, so that whoever only reads
scores (a client, the CLI) does not pay for importing torch."""

SCORES = ("predictive_entropy", "mutual_information", "variation_ratio")
OUTPUTS = (*SCORES, "class_probability")
