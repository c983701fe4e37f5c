"""Opt-in publishing of the pipeline's outputs to the Hugging Face Hub (not a DVC stage).

    python -m publish --dry-run hub-preview    # write exactly what would be uploaded; no network
    HF_TOKEN=hf_... python -m publish          # create the repos and upload

``publish.hub`` stages and uploads; ``publish.model_card`` writes the adapter's card.
"""
