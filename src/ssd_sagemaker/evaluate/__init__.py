"""`ssd-sagemaker evaluate`: score a model (or an endpoint's batch-transform answers) on a
labelled channel — VOC07 and area mAP as training reports them, COCO's AP@[.5:.95] through
pycocotools — and write the report files and plots (docs/evaluation.md)."""
