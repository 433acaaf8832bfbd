from inception_retrain.cli import main

main()
