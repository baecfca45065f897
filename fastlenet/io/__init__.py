"""Reading inputs: what a file is (kinds), which inputs sources name (sources), files that hold
many images (containers), and bytes -> pixels (decode). Nothing here knows about the model."""
