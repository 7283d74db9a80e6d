from nb2kfp.cli.main import main

main()
