"""The methods, one module each, without any study's protocol or claims: loss landscapes and
robustness metrics (``landscape``), image perturbations and ROC statistics (``perturbations``),
Bayesian networks by HMC and VI (``bayes``), saliency maps and their metrics (``saliency``),
statistical verification of Bayesian networks (``verification``), Taylor pruning (``pruning``)."""
