"""Per-dataset pixel statistics images are standardised with (after scaling to ``[0, 1]``)."""

# Mean and standard deviation of the digits pixels after scaling 0..16 to 0..1 (whole set).
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
